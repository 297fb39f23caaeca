"""Report pages: ``fsv report RUN`` (:mod:`.runs`) and ``fsv store info --html`` (:mod:`.stores`),
self-contained HTML (:mod:`.page`) with matplotlib figures (:mod:`.figures`)."""
