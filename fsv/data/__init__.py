"""Stage two data: episode samplers and fixed episode files, feature banks over stores."""
