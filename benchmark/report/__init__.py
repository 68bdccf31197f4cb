"""The report files and the console: they only format what benchmark.analysis computed."""
