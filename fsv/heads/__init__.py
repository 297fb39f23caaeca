"""Stage two: heads trained and evaluated on cached features.

Laid out by role (imports point down; ``tests/test_architecture.py`` enforces it):

* :mod:`fsv.heads.setup`, :mod:`fsv.heads.evaluation`, :mod:`fsv.heads.sweep`: what the commands call;
* :mod:`fsv.heads.tasks`: the kinds of run (recognition, wtal, common), each a
  :class:`~fsv.heads.tasks.base.Task`;
* :mod:`fsv.heads.models` (the heads and their registry), :mod:`fsv.heads.engine` (the training loop,
  the run folder, configuration layers) and :mod:`fsv.heads.data` (episodes, feature banks,
  localization data), which do not import each other.
"""
