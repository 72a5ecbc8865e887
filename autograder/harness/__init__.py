"""What runs next to student code, copied into the sandbox: confinement with the standard library only."""
