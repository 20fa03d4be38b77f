"""tunelab.dashboards"""
