"""Graph -> Graph passes. Each module holds one pure pass with a requires/ensures docstring."""
