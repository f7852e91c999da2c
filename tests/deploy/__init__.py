"""The deployment files: Dockerfile, install script, compose file, systemd unit."""
