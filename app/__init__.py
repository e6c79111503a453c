"""raincheck: app"""
