"""Proxmox: the API client, the storage preflight, the control-plane placement report, the provider LXC and the
compose stack inside it (reached over SSH)."""
