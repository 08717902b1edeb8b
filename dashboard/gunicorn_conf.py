"""gunicorn configuration of the dashboard (`facefleet dashboard` passes it with -c): one
worker, since the worker runs the poller, with threads for concurrent page views."""

from dashboard.config import DashboardSettings

_settings = DashboardSettings.from_env()

bind = f"{_settings.host}:{_settings.port}"
workers = 1
worker_class = "gthread"
threads = 8
timeout = 60
accesslog = "-"
errorlog = "-"
proc_name = "facefleet-dashboard"
control_socket_disable = True  # several gunicorn services on one host must not fight over one socket
