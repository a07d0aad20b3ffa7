"""Widgets of the grantex-local TUI: each shows one thing and asks the data layer for it."""

from .audit import AuditView
from .grant_detail import GrantDetailView
from .inbox import ConsentInbox
from .overview import OverviewBar
from .tree import DelegationTree

__all__ = ["AuditView", "ConsentInbox", "DelegationTree", "GrantDetailView", "OverviewBar"]
