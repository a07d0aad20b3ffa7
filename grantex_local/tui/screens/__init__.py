"""Screens of the grantex-local TUI: the main screen, and the modal dialogs it opens."""

from .code import CodeScreen
from .confirm import ConfirmScreen, RevokeTokenScreen
from .help import HelpScreen
from .main import MainScreen
from .revoke import RevokeGrantScreen

__all__ = ["CodeScreen", "ConfirmScreen", "HelpScreen", "MainScreen", "RevokeGrantScreen",
           "RevokeTokenScreen"]
