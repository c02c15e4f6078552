"""See CARD.md."""
