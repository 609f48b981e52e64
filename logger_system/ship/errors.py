"""The shipping layer's errors, as branches of logger_system.errors' one hierarchy.

ShipError and TransportError are errors.py's (the writer, the log server and their clients
catch them); the rest live here, each subclassing a class of errors.py, so a caller that
catches LoggerSystemError, CorruptRecordError or ValueError catches these too.  Bad files named in TLS options are
errors.ConfigError itself.

  ShipError            base of the branch, never raised itself
  RecordFormatError    (ValueError) a record cannot be made into a syslog message: the
                       caller gave something that is not one of our records
  FrameError           (CorruptRecordError) bytes from a peer are not a frame: garbage,
                       a length that is not a number, a frame cut off by the end
  FrameTooLargeError   (FrameError) a frame announces more octets than the limit
  ProtocolError        the peer broke the protocol's rules with well-formed frames (a
                       response to no command, an open refused, a missing offer)
  TransportError       (ConnectionError) the connection could not be made or broke; what
                       was not acknowledged is still owed
"""
from __future__ import annotations

from logger_system.errors import CorruptRecordError, ShipError, TransportError


class RecordFormatError(ShipError, ValueError):
    """A value given to the syslog formatter is not a record it can carry."""


class FrameError(ShipError, CorruptRecordError):
    """Bytes from a peer are not a valid frame; the connection they came on is unusable."""


class FrameTooLargeError(FrameError):
    """A frame's length field is over the configured limit."""


class ProtocolError(ShipError):
    """The peer sent well-formed frames that the protocol does not allow here."""


__all__ = ["ShipError", "RecordFormatError", "FrameError", "FrameTooLargeError", "ProtocolError",
           "TransportError"]
