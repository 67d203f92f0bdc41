"""flowprobe: exact, bounded flow metering and export for OpenWrt and Linux."""

__version__ = "0.1.0"
