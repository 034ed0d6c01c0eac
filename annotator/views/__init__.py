"""Thin views: check the role, validate with a form, call one service or selector, render."""
