"""satgen:train_translation: train a Pix2Pix satellite -> map model on your own data.

The target is a map raster, or layers rendered with their QGIS styles by
satgen:render_map_target (run as a child algorithm), so train -> translate
chains in the modeler through the OUTPUT_MODEL file.
"""

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputHtml,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..engine.calls import FEEDBACK
from ..engine.translation.config import HEADS, HOLDOUTS, MAX_PALETTE, UPSAMPLES, TranslationConfig
from .base import SatGenAlgorithm


class TrainTranslationAlgorithm(SatGenAlgorithm):
    QGIS_RENDERED = ("LAYERS",)

    def name(self):
        return "train_translation"

    def displayName(self):
        return "Train satellite-to-map model"

    def shortHelpString(self):
        return ("Trains a Pix2Pix model (U-Net generator, conditional 70x70 PatchGAN discriminator, adversarial + "
                "100 x L1 loss, Adam 2e-4) that turns the satellite raster into a map. Give either a map raster "
                "(RGB; any CRS and resolution, it is warped onto the satellite raster's grid) or layers to render "
                "as the map with their QGIS styles (or with the style file given).\n\n"
                "The scene is split into square blocks; a quarter of them is held out for validation, and "
                "training patches never cross into them. Each epoch ends with validation, a checkpoint and an "
                "updated report in the report folder (loss_curves.png, samples.png: input | prediction | target, "
                "metrics.json); running again with the same report folder resumes after an interruption. Tick "
                "'Background colour marks unmapped land' when the map covers only part of the land (e.g. an "
                "OpenStreetMap extract): those pixels are then left out of training and scores.\n\n"
                "The generator may score classes instead of drawing colours (HEAD, advanced): its map is then "
                "always in the classes' colours, each pixel the class it finds most likely, and the cross-entropy "
                "of the scores joins the loss. The classes are the legend's (LEGEND); without one, PALETTE_SIZE "
                "flat colours fitted to the training maps (k-means), named by their hex codes in the model's "
                "legend.\n\n"
                "Save the model file somewhere lasting: a temporary file is deleted when QGIS closes. It goes into "
                "'Translate satellite image to map'. Training is slow on a CPU; a CUDA GPU is used when present.\n\n"
                "Many image pairs (a tile data set): instead of the satellite raster, give the folder of images "
                "(IMAGES) and the folder of their maps or colour class masks with the same names (MAPS); a glob "
                "pattern such as 'city/Tile */images' names several folders, paired in order with MAPS "
                "'city/Tile */masks'. Images without georeferencing pair pixel for pixel. Whole images are then "
                "held out for validation, or whole folders (HOLDOUT). Side-by-side images (input left, map right, "
                "as in the pix2pix data sets) need only IMAGES and SIDE_BY_SIDE.\n\n"
                "Command line names: INPUT, TARGET, LAYERS, IMAGES, MAPS, SIDE_BY_SIDE, HOLDOUT, UPSAMPLE, HEAD, "
                "PALETTE_SIZE, "
                "STYLE, LEGEND, UNLABELLED_BACKGROUND, BANDS, EPOCHS, "
                "PATCH_SIZE (formerly TILE_SIZE, still accepted), BATCH_SIZE, PATCHES_PER_EPOCH, WIDTH, SEED, DEVICE, "
                "PRECISION, OUTPUT_MODEL, OUTPUT_REPORT; output OUTPUT_HTML (the report as one page).")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Satellite raster", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("TARGET", "Map raster (RGB)", optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "LAYERS", "Or: layers to render as the map", QgsProcessing.TypeMapLayer, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "IMAGES", "Or, many pairs: folder of images (or a pattern such as city/Tile */images)",
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "MAPS", "... and the folder of their maps or class masks, with the images' names",
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        # optional: graphical models saved before these existed stay valid
        self.add_advanced(QgsProcessingParameterBoolean(
            "SIDE_BY_SIDE", "The images hold their map in their right half (no MAPS folder)", defaultValue=False,
            optional=True))
        self.add_advanced(QgsProcessingParameterEnum(
            "HOLDOUT", "With many pairs, hold out whole", options=["images", "folders"], defaultValue=0,
            optional=True))
        self.add_advanced(QgsProcessingParameterEnum(
            "UPSAMPLE", "Generator's upsampling", options=[
                "resize + convolution (no checkerboard)", "transposed convolution (the paper's)"], defaultValue=0,
            optional=True))
        self.add_advanced(QgsProcessingParameterEnum(
            "HEAD", "The generator draws", options=[
                "colours (Pix2Pix)", "classes, each in its colour (the legend's, or flat colours fitted to the maps)"],
            defaultValue=0, optional=True))
        self.add_advanced(QgsProcessingParameterNumber(
            "PALETTE_SIZE", "Flat colours to fit to the maps (classes without a legend)",
            QgsProcessingParameterNumber.Integer, defaultValue=TranslationConfig.palette_size, minValue=2,
            maxValue=MAX_PALETTE, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "STYLE", "Style (.qml) for the vector LAYERS (empty: their own)", extension="qml", optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "LEGEND", "Legend of the map (JSON from 'Render map target'; lets the report score each class)",
            extension="json", optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            "UNLABELLED_BACKGROUND", "Background colour marks unmapped land (leave it out of training)",
            defaultValue=False))
        self.add_band_parameter()
        self.add_training_parameters(TranslationConfig, "Generator width (ngf; 64 = the paper's)",
                                     renamed={"PATCH_SIZE": "TILE_SIZE"})
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT_MODEL", "Model file", fileFilter="SatGen model (*.satgen)"))
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_REPORT", "Training report folder"))
        self.addOutput(QgsProcessingOutputHtml("OUTPUT_HTML", "Training report (page: curves, samples, metrics)"))

    def run_engine(self, parameters, context, feedback):
        report = Path(self.parameterAsString(parameters, "OUTPUT_REPORT", context))
        report.mkdir(parents=True, exist_ok=True)
        images = self.parameterAsString(parameters, "IMAGES", context)
        if images:
            if parameters.get("INPUT") or parameters.get("TARGET") or parameters.get("LAYERS"):
                raise QgsProcessingException("give either a satellite raster (INPUT) or a folder of images "
                                             "(IMAGES), not both")
            source = images
            target = self.parameterAsString(parameters, "MAPS", context)
            legend = self.parameterAsFile(parameters, "LEGEND", context) or None
        elif parameters.get("INPUT"):
            source = self.raster_path(parameters, "INPUT", context)
            target, legend = self.target(parameters, context, feedback, report)
        else:
            raise QgsProcessingException("no training data given: choose a satellite raster (INPUT) and its map, "
                                         "or a folder of images (IMAGES) and of their maps (MAPS)")
        config = TranslationConfig(
            input=source, target=target, legend=legend,
            side_by_side=self.parameterAsBool(parameters, "SIDE_BY_SIDE", context),
            holdout=HOLDOUTS[self.parameterAsEnum(parameters, "HOLDOUT", context)],
            upsample=UPSAMPLES[self.parameterAsEnum(parameters, "UPSAMPLE", context)],
            head=HEADS[self.parameterAsEnum(parameters, "HEAD", context)],
            palette_size=self.parameterAsInt(parameters, "PALETTE_SIZE", context),
            output_model=self.parameterAsFileOutput(parameters, "OUTPUT_MODEL", context), report_dir=str(report),
            bands=self.parameterAsInts(parameters, "BANDS", context) or None,
            unlabelled_background=self.parameterAsBool(parameters, "UNLABELLED_BACKGROUND", context),
            **self.training_values(parameters, context, renamed={"PATCH_SIZE": "TILE_SIZE"}))
        self.warn_if_temporary(config.output_model, feedback)
        path = self.engine(feedback, "train_translation", config, FEEDBACK)
        return {"OUTPUT_MODEL": str(path), "OUTPUT_REPORT": str(report), "OUTPUT_HTML": str(report / "index.html")}

    def target(self, parameters, context, feedback, report: Path):
        """(map raster path, legend path or None): TARGET as given, or LAYERS rendered."""
        layers = self.parameterAsLayerList(parameters, "LAYERS", context)
        legend = self.parameterAsFile(parameters, "LEGEND", context) or None
        if parameters.get("TARGET"):
            if layers:
                raise QgsProcessingException("give either TARGET or LAYERS, not both")
            return self.raster_path(parameters, "TARGET", context), legend
        if not layers:
            raise QgsProcessingException("no map given: choose a map raster (TARGET) or layers to render (LAYERS)")
        import processing

        feedback.info(f"rendering {len(layers)} layer(s) onto the satellite grid")
        rendered = processing.run("satgen:render_map_target", {
            "INPUT": parameters["INPUT"], "LAYERS": layers, "STYLE": parameters.get("STYLE") or "",
            "OUTPUT": str(report / "target_map.tif"), "OUTPUT_LEGEND": str(report / "target_legend.json"),
        }, context=context, feedback=feedback.feedback, is_child_algorithm=True)
        return rendered["OUTPUT"], rendered["OUTPUT_LEGEND"]
