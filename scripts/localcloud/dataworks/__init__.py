"""A local DataWorks OpenAPI 2024-05-18 (task instances), laid out like a moto service.

models.py is the backend (state and behaviour), responses.py the wire format, exceptions.py the
real error codes, server.py the HTTP gateway (signature, quota, faults, journal).
"""

from .journal import JournalEntry
from .models import TaskInstance
from .server import DataWorksEmulator

__all__ = ["DataWorksEmulator", "JournalEntry", "TaskInstance"]
