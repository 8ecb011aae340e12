"""Messages that workers post to the UI; past-tense events, merged with can_replace where only the latest counts.

One module per part of the app (`runs`, `dashboard`, `checkpoints`, `generation`), so a screen imports
only its own: the runs screen's first frame does not wait for the others' classes.
"""
