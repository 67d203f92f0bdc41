"""Where packets and flows come from: live capture on interfaces
(capture.py) and, beside it, the kernel's connection tracker (conntrack)."""
