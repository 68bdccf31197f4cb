"""pytest loads this first, which puts ``tests/benchmark`` on ``sys.path`` (the rootdir-relative
``prepend`` import mode): the helpers ``enginekit`` and ``sim/simkit`` then import from any test
below it, also when one test file is run alone."""
