"""Visualisers: learned cluster assignments, and a panoptic-safe mmdet visualiser."""
from clusterseg.visualization.clusters import cluster_maps, colour_index_map, compose_panels
from clusterseg.visualization.det_visualizer import DetLocalVisualizer

__all__ = ['cluster_maps', 'colour_index_map', 'compose_panels', 'DetLocalVisualizer']
