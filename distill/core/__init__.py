"""What every side shares: charsets, preprocessing, CTC decoding, metrics, label files,
the kinds of data source and the CPU's features. numpy and OpenCV only: no torch."""
