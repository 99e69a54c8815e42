"""omni-scale: Pulumi components for an Omni + Proxmox + Talos estate."""
