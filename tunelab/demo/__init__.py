"""tunelab.demo"""
