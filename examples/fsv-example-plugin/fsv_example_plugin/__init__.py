"""An example fsv plugin: a recognition head (:mod:`.head`) and a frame backbone (:mod:`.backbone`)."""
