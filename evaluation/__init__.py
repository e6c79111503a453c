"""raincheck: evaluation"""
