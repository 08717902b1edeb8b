from .settings import *  # noqa: F403 - transitional re-export of service.settings (issue 16); deleted with the move
