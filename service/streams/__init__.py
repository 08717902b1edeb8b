"""Camera streams: frames in (RTSP, HTTP MJPEG, files, V4L2, sampled), tracked faces, the crops worth
recognising, events out (issue 21).

This room sits at rank 4 (beside `galleries` and `ops`): it may use the engine, the models, the settings and
the shared errors, and reports what it does through small Protocols instead of importing the metrics.
"""
