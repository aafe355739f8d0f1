"""Cluster-assignment visualisers."""
from clusterseg.visualization.clusters import cluster_maps, colour_index_map, compose_panels

__all__ = ['cluster_maps', 'colour_index_map', 'compose_panels']
