"""Omni: the omnictl client, the documents Omni receives, its infra provider's registration, the MachineClass and
TalosCluster components and their dynamic providers."""
