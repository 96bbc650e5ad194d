"""Scenes with known truth: synthetic videos scripted from intent, and the counted
truth of real clips.
"""
