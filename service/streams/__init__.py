"""Camera streams: sources that read RTSP, HTTP (MJPEG), files and V4L2 devices into sampled frames."""
