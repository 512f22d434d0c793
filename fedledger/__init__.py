"""fedledger package."""
