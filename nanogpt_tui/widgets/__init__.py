"""Widgets and the Textual-free helpers behind them."""
