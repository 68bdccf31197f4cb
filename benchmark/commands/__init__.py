"""One module per command of `python -m benchmark`: flags in, options, the layers below, an exit status out."""
