"""Stage two data: episode samplers and fixed episode files, feature banks, localization videos
and episodes, imported benchmarks, the synthetic generators."""
