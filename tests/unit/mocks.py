"""Pulumi mocks that record every resource the program registers."""

import pulumi


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, registered: list):
        self.registered = registered

    def new_resource(self, args):
        self.registered.append(args)
        return [f"{args.name}-id", dict(args.inputs)]

    def call(self, args):
        return {}
