"""What every other layer uses: the spec model, the stack settings, the program's inputs, retries, console output
and the bases of the dynamic providers."""
