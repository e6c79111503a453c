"""raincheck: catalogs"""
