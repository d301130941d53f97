"""Small procedural worlds shared by tasks and their scorers."""
