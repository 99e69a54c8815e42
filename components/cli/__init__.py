"""Commands around `pulumi preview/up`: drift detection (python -m components.cli.drift) and adoption
(python -m components.cli.adoption)."""
