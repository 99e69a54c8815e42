"""Kubernetes: Cilium rendered into a cluster's manifests, and the Tailscale operator's Helm release."""
