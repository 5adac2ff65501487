"""cameras"""
