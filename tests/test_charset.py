import pytest

from distill.core.charset import Charset


def test_builtins():
    assert Charset.resolve("digits").chars == list("0123456789")
    ascii_ = Charset.resolve("ascii")
    assert len(ascii_) == 95 and " " in ascii_ and "~" in ascii_
    zh = Charset.resolve("zh")
    hanzi = [c for c in zh.chars if "\u4e00" <= c <= "\u9fff"]
    assert len(hanzi) == 6763
    for c in hanzi:
        c.encode("gb2312")  # every hanzi is GB2312
    assert all(chr(i) in zh for i in range(32, 127))
    assert "，" in zh and "。" in zh


def test_file_with_space_and_blank_lines(tmp_path):
    p = tmp_path / "cs.txt"
    p.write_text("a\n \n\nb\r\n", encoding="utf-8")
    cs = Charset.resolve(str(p))
    assert cs.chars == ["a", " ", "b"]
    assert cs.num_classes == 4
    assert cs.encode("a b") == [1, 2, 3]
    assert cs.decode([0, 1, 2, 0, 3, 99]) == "a b"


def test_bad_file_line_names_file(tmp_path):
    p = tmp_path / "cs.txt"
    p.write_text("a\nbc\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        Charset.from_file(p)


def test_unknown_character_error_is_readable():
    cs = Charset.resolve("digits")
    with pytest.raises(KeyError, match="'x'"):
        cs.encode("12x")
    assert cs.unknown("1a2ba") == ["a", "b"]
    assert cs.strip("1a2") == "12"


def test_resolve_errors():
    with pytest.raises(ValueError, match="not a built-in"):
        Charset.resolve("klingon")
    assert Charset.resolve(["x", "y"]).chars == ["x", "y"]
