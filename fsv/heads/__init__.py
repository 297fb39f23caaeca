"""Stage two: few-shot and localization heads on cached features."""
