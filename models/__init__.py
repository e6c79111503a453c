"""raincheck: models"""
