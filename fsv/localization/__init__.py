"""Stage two, localization: data, episodes, training and scoring of the CDC-CA (few-shot common
action localization) and VQK-Net (weakly-supervised temporal action localization) heads."""
