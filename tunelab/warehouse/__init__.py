"""tunelab.warehouse"""
