"""Generated from proto/ by voxelgate/_codegen.py. Do not edit."""
