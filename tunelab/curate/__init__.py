"""tunelab.curate"""
