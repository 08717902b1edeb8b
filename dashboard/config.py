from service.settings import DashboardSettings  # transitional re-export of the dashboard section (issue 16)

__all__ = ["DashboardSettings"]
