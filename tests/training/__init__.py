# demo.yaml's fit on crops small enough for a test: `fit_config(..., extra=SMALL_CROPS)`
SMALL_CROPS = ["--data.crop_size", "[8, 32, 32]", "--model.val_roi", "[8, 32, 32]"]
