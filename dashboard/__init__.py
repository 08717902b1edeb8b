"""facefleet fleet dashboard (Flask). The pages, poller and backends arrive with the dashboard
issue; the package exists now so the distribution's layout is fixed from the start."""
