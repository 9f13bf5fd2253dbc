"""Media streams: the carrier-neutral stream protocol, playback, sessions and the hub.

Import submodules directly (`voicecall.media.hub`, ...); this package imports nothing heavy so the
call service can use `voicecall.providers.streams` without loading numpy.
"""
