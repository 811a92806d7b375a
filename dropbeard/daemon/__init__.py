"""IO: the long-running service: composition root, per-root runners, watcher, control
socket, transfer tracking, logging, sd_notify."""
